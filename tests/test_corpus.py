"""The speech corpus (data_samples/speech_corpus) and speech augmentation (`emozone_lite.corpus`)."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from emozone_lite.audio import FEATURE_SR, PHONE_TO_VISEME, Phone, phone_to_viseme
from emozone_lite.corpus import (
    MANIFEST_COLUMNS,
    augment_speech,
    corpus_manifest,
    corpus_voices,
    load_corpus,
)
from emozone_lite.utils import data_path

ARPABET = set(
    "aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh".split()
)


def test_corpus_size_voices_and_sentences():
    rows = corpus_manifest()
    minutes = sum(r["end"] - r["start"] for r in rows) / 60
    assert minutes >= 20, f"{minutes:.1f} min of speech"
    assert len({r["text"] for r in rows}) >= 300
    assert len(corpus_voices()) >= 4
    assert {r["sex"] for r in rows} == {"female", "male"}
    assert {r["synthesiser"] for r in rows} >= {"festival", "espeak"}
    assert not any("arctic" in r["id"] for r in rows), "the real ARCTIC recordings are the test set"


def test_corpus_phones_tile_each_utterance_and_cover_english():
    seen: set[str] = set()
    for v in corpus_voices():
        for u in load_corpus(v, n=25):
            assert u.phones[0].start == 0 and abs(u.phones[-1].end - u.duration) < 1e-6
            assert u.phones[0].phone == "sil" and u.phones[-1].phone == "sil"
            for a, b in zip(u.phones, u.phones[1:]):
                assert abs(a.end - b.start) < 1e-6 and a.end > a.start
            seen |= {p.phone for p in u.phones}
    assert seen <= set(PHONE_TO_VISEME)
    rows = corpus_manifest()
    assert len(seen & ARPABET) >= 36, sorted(ARPABET - seen)
    assert len(rows) >= 300


def test_corpus_audio_is_speech_where_the_labels_say_so():
    """Energy is high inside phones and low in the silences: the labels fit the decoded Opus."""
    for v in corpus_voices():
        u = load_corpus(v, n=3)[1]
        hop = FEATURE_SR // 100
        e = np.array([np.sqrt(np.mean(u.audio[i : i + hop] ** 2)) for i in range(0, len(u.audio) - hop, hop)])
        t = (np.arange(len(e)) + 0.5) / 100
        speech = np.zeros(len(e), bool)
        for p in u.phones:
            if p.phone not in ("sil", "pau"):
                speech |= (t >= p.start + 0.02) & (t < p.end - 0.02)
        silent = np.ones(len(e), bool)
        for p in u.phones:
            if p.phone not in ("sil", "pau"):
                silent &= ~((t >= p.start - 0.05) & (t < p.end + 0.05))
        assert silent.any() and speech.any()
        assert np.median(e[speech]) > 10 * np.median(e[silent]) + 1e-6, v


def test_load_corpus_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus voice.*'nobody'"):
        load_corpus(["nobody"])
    with pytest.raises(ValueError, match="positive int"):
        load_corpus(n=0)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        load_corpus(root=tmp_path)
    (tmp_path / "manifest.csv").write_text("id,voice,start,end\nx,v,0,1\n")
    with pytest.raises(ValueError, match="missing column.*synthesiser"):
        corpus_manifest(tmp_path)


def test_load_corpus_names_unknown_phones_and_overlong_rows(tmp_path):
    src = data_path("speech_corpus")
    voice = corpus_voices()[0]
    for f in ("manifest.csv", f"{voice}.opus", f"{voice}.lab"):
        shutil.copy(src / f, tmp_path / f)
    lab = (tmp_path / f"{voice}.lab").read_text().splitlines()
    i = next(k for k, line in enumerate(lab) if line.split()[2] not in ("sil", "pau"))
    s, e, _ = lab[i].split()
    lab[i] = f"{s} {e} qq"
    (tmp_path / f"{voice}.lab").write_text("\n".join(lab) + "\n")
    with pytest.raises(ValueError, match="unknown phone 'qq'"):
        load_corpus(voice, n=2, root=tmp_path)
    rows = list(csv.DictReader((src / "manifest.csv").open()))
    rows = [r for r in rows if r["voice"] == voice][:1]
    rows[0]["end"] = "99999"
    with (tmp_path / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match="ends at 99999"):
        load_corpus(voice, root=tmp_path)


def _tone_speech(seconds=1.0):
    t = np.arange(int(seconds * FEATURE_SR)) / FEATURE_SR
    env = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float32)
    y = 0.3 * env * np.sin(2 * np.pi * 200 * t).astype(np.float32)
    phones = [Phone(0.0, 0.25, "aa"), Phone(0.25, 0.5, "sil"), Phone(0.5, 0.75, "aa"), Phone(0.75, seconds, "sil")]
    return y.astype(np.float32), phones


def test_augment_tempo_scales_audio_and_phones_together():
    y, ph = _tone_speech()
    z, ph2, p = augment_speech(y, ph, 0, tempo=(1.25, 1.25), semitones=(0, 0), snr_db=(80, 80), gain_db=(0, 0),
                               eq_prob=0, room_prob=0)  # fmt: skip
    assert p["tempo"] == pytest.approx(1.25)
    assert len(z) == pytest.approx(len(y) / 1.25, rel=0.01)
    assert [q.phone for q in ph2] == [q.phone for q in ph]
    assert ph2[1].start == pytest.approx(0.2) and ph2[-1].end == pytest.approx(len(z) / FEATURE_SR)
    # the loud half-seconds stay where the labels put them
    hop = FEATURE_SR // 100
    e = np.array([np.abs(z[i : i + hop]).mean() for i in range(0, len(z) - hop, hop)])
    t = (np.arange(len(e)) + 0.5) / 100
    inside = (t > ph2[0].start + 0.03) & (t < ph2[0].end - 0.03)
    between = (t > ph2[1].start + 0.03) & (t < ph2[1].end - 0.03)
    assert e[inside].mean() > 10 * e[between].mean()


def test_augment_noise_level_and_determinism():
    y, ph = _tone_speech(2.0)
    kw = dict(tempo=(1, 1), semitones=(0, 0), gain_db=(0, 0), eq_prob=0, room_prob=0, snr_db=(20, 20))
    z, _, p = augment_speech(y, ph, 3, **kw)
    snr = 10 * np.log10(np.mean(y**2) / np.mean((z - y) ** 2))
    assert snr == pytest.approx(20, abs=1.0)
    z2, _, p2 = augment_speech(y, ph, 3, **kw)
    np.testing.assert_array_equal(z, z2)
    assert p == p2
    loud, _, _ = augment_speech(y, None, 1, **(kw | {"gain_db": (6, 6), "snr_db": (90, 90)}))
    assert np.sqrt(np.mean(loud**2)) == pytest.approx(2 * np.sqrt(np.mean(y**2)), rel=0.02)


def test_augment_random_settings_are_finite_and_bounded():
    u = load_corpus(corpus_voices()[0], n=1)[0]
    rng = np.random.default_rng(0)
    for _ in range(4):
        z, ph, p = augment_speech(u.audio, u.phones, rng)
        assert np.isfinite(z).all() and np.abs(z).max() <= 1.0
        assert ph[-1].end == pytest.approx(len(z) / FEATURE_SR)
        assert 0.85 <= p["tempo"] <= 1.15 and -3 <= p["semitones"] <= 3
        for q in ph:
            phone_to_viseme(q.phone)


def test_augment_bad_input():
    with pytest.raises(ValueError, match="1-D array"):
        augment_speech(np.zeros((2, 16000)))
    with pytest.raises(ValueError, match="1-D array"):
        augment_speech(np.zeros(100))
    y, _ = _tone_speech()
    with pytest.raises(ValueError, match="tempo"):
        augment_speech(y, tempo=(1.2, 0.8))
    with pytest.raises(ValueError, match="positive"):
        augment_speech(y, tempo=(0.0, 1.0))
    with pytest.raises(ValueError, match="rt60"):
        augment_speech(y, rt60=(0.5, 0.1))


def test_augmentation_presets_keep_or_alter_the_timing_as_documented():
    from emozone_lite.corpus import AUGMENTATION

    y, ph = _tone_speech()
    z, ph_mild, p = augment_speech(y, ph, 0, **AUGMENTATION["mild"])
    assert len(z) == len(y) and p["tempo"] == 1.0 and p["semitones"] == 0.0  # no tempo or pitch change
    assert [(a.start, a.phone) for a in ph_mild] == [(a.start, a.phone) for a in ph]
    assert 25.0 <= p["snr_db"] <= 45.0 and (p["rt60"] is None or 0.1 <= p["rt60"] <= 0.3)
    assert AUGMENTATION["none"] is None and AUGMENTATION["full"] == {}
