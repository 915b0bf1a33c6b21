"""emozone_lite.audio: loading, frame-aligned features, phone labels and visemes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from emozone_lite import audio
from emozone_lite.audio import (
    FEATURE_SR,
    LOG_FLOOR,
    N_MELS,
    VISEMES,
    WINDOW,
    Phone,
    features,
    features_from_file,
    load_audio,
    phone_to_viseme,
    read_phone_labels,
    viseme_track,
)
from emozone_lite.utils import data_path

A0009_PHONES = (
    "sil hh iy t er n d sh aa r p l iy ae n d f ey s t g r eh g s ax n ax k r ao s dh ax t ey b ax l sil"
).split()


def _tone(f0: float, dur: float, sr: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(dur * sr))) / sr
    return (amp * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def _peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spec)])


@pytest.fixture(scope="module")
def a0009():
    return load_audio(data_path("arctic_a0009.wav"))


# --------------------------------------------------------------------------- load_audio
def test_load_bundled_wav(a0009):
    assert a0009.dtype == np.float32 and a0009.ndim == 1
    assert a0009.shape == (49520,)  # 3.095 s at 16 kHz
    ref, sr = sf.read(data_path("arctic_a0009.wav"), dtype="float32")
    assert sr == 16000
    np.testing.assert_array_equal(a0009, ref)


def test_load_resamples_44k_stereo_and_mixes_to_mono(tmp_path):
    sr_in, dur = 44100, 1.5
    left = _tone(1000.0, dur, sr_in, amp=0.4)
    right = np.zeros_like(left)
    p = tmp_path / "stereo44k.wav"
    sf.write(p, np.stack([left, right], axis=1), sr_in, subtype="FLOAT")
    y = load_audio(p, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - dur * 16000) <= 1
    assert _peak_hz(y, 16000) == pytest.approx(1000.0, abs=2.0)
    # mono = mean of channels: a 0.4 sine beside silence becomes a 0.2 sine
    mid = y[4000:-4000]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.2 / math.sqrt(2), rel=0.01)
    y22 = load_audio(p, sr=22050)
    assert abs(len(y22) - dur * 22050) <= 1


@pytest.mark.parametrize("fmt,subtype,tol", [("FLAC", "PCM_16", 1e-4), ("OGG", "VORBIS", None)])
def test_flac_and_ogg_round_trip(tmp_path, fmt, subtype, tol):
    x = _tone(440.0, 1.0, 16000) + _tone(1250.0, 1.0, 16000, amp=0.1)
    p = tmp_path / f"x.{fmt.lower()}"
    sf.write(p, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(p)
    assert y.shape == x.shape
    if tol is not None:
        np.testing.assert_allclose(y, x, atol=tol)
    else:  # lossy: same signal up to coding noise
        assert np.corrcoef(x, y)[0, 1] > 0.99


def test_mp3_round_trip(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile built without MP3 support; no mp3 encoder to write a test file")
    x = _tone(440.0, 1.0, 44100)
    p = tmp_path / "x.mp3"
    try:
        sf.write(p, x, 44100, format="MP3", subtype="MPEG_LAYER_III")
    except Exception as e:
        pytest.skip(f"cannot encode mp3 here: {e}")
    y = load_audio(p, sr=16000)
    assert abs(len(y) - 16000) < 0.1 * 16000  # encoder delay/padding adds a few ms
    assert _peak_hz(y, 16000) == pytest.approx(440.0, abs=3.0)


def test_fallback_to_audioread_when_soundfile_fails(tmp_path, monkeypatch):
    x = _tone(300.0, 0.5, 16000)
    p = tmp_path / "x.wav"
    sf.write(p, x, 16000, subtype="PCM_16")

    def broken(*a, **k):
        raise sf.LibsndfileError(0, "simulated: format not supported")

    monkeypatch.setattr(sf, "read", broken)
    y = load_audio(p)  # librosa.load → audioread's stdlib wave reader
    np.testing.assert_allclose(y, x, atol=1e-4)


def test_load_missing_file_names_path(tmp_path):
    p = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(p)


def test_load_bad_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="could not decode"):
        load_audio(empty)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="could not decode"):
        load_audio(junk)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="no samples"):
        load_audio(zero)
    nan = tmp_path / "nan.wav"
    x = _tone(200.0, 0.2, 16000)
    x[100] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        load_audio(nan)
    with pytest.raises(ValueError, match="directory"):
        load_audio(tmp_path)
    with pytest.raises(ValueError, match="sr must be"):
        load_audio(data_path("arctic_a0009.wav"), sr=0)


# --------------------------------------------------------------------------- features
def _log_mel_numpy(w: np.ndarray) -> np.ndarray:
    """Readable twin: frame by hand, numpy rfft, librosa's mel matrix."""
    import librosa

    hop, n_fft, win = 320, 512, 400
    n = math.ceil(len(w) / hop)
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2 : (n_fft - win) // 2 + win] = np.hanning(win + 1)[:-1]  # periodic
    mel = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=80, fmin=55.0, fmax=7600.0)
    rows = []
    for k in range(n):
        centre = (k + 0.5) * hop  # sample at the middle of frame k
        start = int(centre - n_fft / 2)
        seg = np.zeros(n_fft)
        lo, hi = max(start, 0), min(start + n_fft, len(w))
        seg[lo - start : hi - start] = w[lo:hi]
        rows.append(mel @ np.abs(np.fft.rfft(seg * window)) ** 2)
    return np.log(np.maximum(np.array(rows), 1e-10))


def test_log_mel_matches_readable_twin(a0009):
    x = a0009[:16000]
    got = audio.log_mel_spectrogram(x)
    assert got.shape == (50, N_MELS)
    np.testing.assert_allclose(got, _log_mel_numpy(x), atol=2e-3)


def test_features_shapes_and_counts(a0009):
    f = features(a0009, 16000)
    dur = len(a0009) / 16000
    assert f.n_frames == round(dur * 25) == 77
    assert f.mel_windows.shape == (77, WINDOW, N_MELS) and f.mel_windows.dtype == np.float32
    assert f.energy.shape == (77,) and f.energy.dtype == np.float32
    assert f.log_mel.shape == (math.ceil(len(a0009) / 320), N_MELS)
    assert f.fps == 25.0 and f.sr == FEATURE_SR and f.duration == pytest.approx(dur)
    assert f.frame_times.shape == (77,) and f.mel_times.shape == (f.log_mel.shape[0],)


def test_windows_are_centred_on_frames_loop_oracle(a0009):
    f = features(a0009, 16000)
    F = f.log_mel.shape[0]
    for t in range(f.n_frames):
        rows = [min(max(2 * t - 8 + i, 0), F - 1) for i in range(16)]
        np.testing.assert_array_equal(f.mel_windows[t], f.log_mel[rows])
        if 8 <= 2 * t <= F - 8:  # interior window: its rows' mean time is exactly t / fps
            assert np.mean(f.mel_times[rows]) == pytest.approx(t / 25.0, abs=1e-12)


def test_window_centre_in_the_signal():
    """A short symmetric burst at 1.0 s lights window 25 symmetrically about its middle."""
    n = np.arange(-480, 481)  # symmetric about sample 16000 (= 1.0 s = frame 25)
    y = np.zeros(32000, np.float32)
    y[16000 + n] = 0.3 * np.cos(2 * np.pi * 800.0 * n / 16000) * np.hanning(961)
    f = features(y, 16000)
    prof = np.exp(f.mel_windows[25]).sum(axis=1)  # power per row
    assert np.argmax(prof) in (7, 8)
    np.testing.assert_allclose(prof, prof[::-1], rtol=1e-3)
    # a frame later (1.04 s) the burst sits two rows (40 ms) earlier in the window
    prof26 = np.exp(f.mel_windows[26]).sum(axis=1)
    np.testing.assert_allclose(prof26[:-2], prof[2:], rtol=1e-5)


def test_windows_for_other_frame_rates(a0009):
    f = features(a0009, 16000, fps=30.0)
    assert f.n_frames == round(len(a0009) / 16000 * 30)
    assert f.mel_windows.shape == (f.n_frames, 16, 80)
    c = round(13 * 50 / 30)  # frame 13 → centre row 22
    np.testing.assert_array_equal(f.mel_windows[13], f.log_mel[c - 8 : c + 8])
    g = features(a0009, 16000, n_frames=100)  # longer video: edge rows repeat
    assert g.mel_windows.shape == (100, 16, 80)
    np.testing.assert_array_equal(g.mel_windows[-1], np.repeat(g.log_mel[-1:], 16, axis=0))


def test_features_resample_44k_equal_16k(a0009):
    import librosa

    up = librosa.resample(a0009, orig_sr=16000, target_sr=44100, res_type="soxr_hq")
    f44 = features(up, 44100)
    f16 = features(a0009, 16000)
    assert f44.n_frames == f16.n_frames and f44.sr == 16000
    assert f44.log_mel.shape == f16.log_mel.shape
    speech = f16.log_mel > -12  # compare where there is signal (resampling noise < floor)
    assert np.median(np.abs(f44.log_mel - f16.log_mel)[speech]) < 0.05


def test_energy(a0009):
    f = features(a0009, 16000)
    assert f.energy.min() >= 0 and f.energy.max() == pytest.approx(1.0)
    # a0009's label: 'sil' until 0.13 s; speech from 0.2 s on
    assert f.energy[:3].max() < 0.6 < f.energy[10:40].mean()
    quiet = features(0.01 * a0009, 16000)  # peak-relative: loudness invariant
    np.testing.assert_allclose(quiet.energy, f.energy, atol=1e-5)


def test_silent_audio_warns_and_returns_floor():
    with pytest.warns(UserWarning, match="silent"):
        f = features(np.zeros(16000, np.float32), 16000)
    assert f.n_frames == 25
    np.testing.assert_array_equal(f.energy, 0.0)
    np.testing.assert_allclose(f.log_mel, np.log(LOG_FLOOR))


def test_features_bad_inputs():
    with pytest.raises(ValueError, match=r"\[S\] mono"):
        features(np.zeros((2, 1000), np.float32), 16000)
    with pytest.raises(ValueError, match="empty"):
        features(np.zeros(0, np.float32), 16000)
    x = _tone(200.0, 0.5, 16000)
    x[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        features(x, 16000)
    with pytest.raises(ValueError, match="sr must be"):
        features(np.ones(1000), 0)
    with pytest.raises(ValueError, match="fps"):
        features(np.ones(1000), 16000, fps=0)
    with pytest.raises(ValueError, match="shorter than half a video frame"):
        features(np.ones(100), 16000)
    with pytest.raises(ValueError, match="n_frames"):
        features(np.ones(16000), 16000, n_frames=0)


def test_features_from_file_equals_features(a0009):
    f = features_from_file(data_path("arctic_a0009.wav"))
    g = features(a0009, 16000)
    np.testing.assert_array_equal(f.mel_windows, g.mel_windows)
    np.testing.assert_array_equal(f.energy, g.energy)
    with pytest.raises(FileNotFoundError, match="missing.flac"):
        features_from_file("missing.flac")


# --------------------------------------------------------------------------- phone labels
def test_read_a0009_hts_full_context_label():
    ph = read_phone_labels(data_path("arctic_a0009_phone.lab"))
    assert [p.phone for p in ph] == A0009_PHONES
    assert ph[0] == Phone(0.0, 0.13, "sil")
    assert ph[-1].end == pytest.approx(3.075)
    for a, b in zip(ph, ph[1:]):
        assert a.end == pytest.approx(b.start) and a.start < a.end


def test_read_derived_a0007_label():
    ph = read_phone_labels(data_path("arctic_a0007_phone.lab"))
    assert [p.phone for p in ph[:4]] == ["sil", "ae", "n", "d"]
    assert ph[-1].phone == "sil" and ph[-1].end == pytest.approx(4.0)
    for a, b in zip(ph, ph[1:]):
        assert a.end == pytest.approx(b.start) and a.start < a.end
    for p in ph:
        phone_to_viseme(p.phone)  # every symbol is a known ARCTIC phone


def test_read_mono_triphone_and_state_labels(tmp_path):
    mono = tmp_path / "mono.lab"
    mono.write_text("0 1000000 sil\n\n1000000 2500000 AA1\n2500000 3000000 pau 12.5\n")
    assert read_phone_labels(mono) == [Phone(0.0, 0.1, "sil"), Phone(0.1, 0.25, "aa1"), Phone(0.25, 0.3, "pau")]
    tri = tmp_path / "tri.lab"
    tri.write_text("0 500000 sil-m+aa\n500000 900000 m-aa+sil\n")
    assert [p.phone for p in read_phone_labels(tri)] == ["m", "aa"]
    state = tmp_path / "state.lab"
    lines = []
    for ctx, s in [("x^x-sil+m=aa@x", 0), ("x^sil-m+aa=x@1", 3)]:
        for j in range(3):
            lines.append(f"{(s + j) * 100000} {(s + j + 1) * 100000} {ctx}/A:0[{j + 2}]")
    state.write_text("\n".join(lines) + "\n")
    assert read_phone_labels(state) == [Phone(0.0, 0.03, "sil"), Phone(0.03, 0.06, "m")]


@pytest.mark.parametrize(
    "text,match",
    [
        ("0 100 sil\n100 200\n", r":2: expected 'start end label'"),
        ("0 100 sil\n100 2e5 a\n", r":2: start/end must be integers"),
        ("0 100 sil\n\n300 200 a\n", r":3: need 0 <= start <= end"),
        ("0 100 sil\n200 300 a\n100 400 b\n", r":3: start time 100 goes back"),
        ("0 100 a^b-+d=e@x\n", r":1: cannot find the phone"),
        ("\n\n", "holds no labels"),
    ],
)
def test_read_labels_bad_lines(tmp_path, text, match):
    p = tmp_path / "bad.lab"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_phone_labels(p)


def test_read_labels_missing_and_binary(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.lab"):
        read_phone_labels(tmp_path / "nothing.lab")
    b = tmp_path / "bin.lab"
    b.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_phone_labels(b)


# --------------------------------------------------------------------------- visemes
def test_viseme_table():
    assert VISEMES[0] == "sil" and len(VISEMES) == len(set(VISEMES)) == 15
    assert set(audio.PHONE_TO_VISEME.values()) == set(VISEMES)
    expected = {
        "p": "PP",
        "b": "PP",
        "m": "PP",
        "f": "FF",
        "v": "FF",
        "th": "TH",
        "dh": "TH",
        "t": "DD",
        "d": "DD",
        "k": "kk",
        "g": "kk",
        "ch": "CH",
        "sh": "CH",
        "jh": "CH",
        "s": "SS",
        "z": "SS",
        "n": "nn",
        "l": "nn",
        "r": "RR",
        "aa": "aa",
        "eh": "E",
        "ih": "I",
        "iy": "I",
        "ao": "O",
        "ow": "O",
        "uw": "U",
        "w": "U",
        "sil": "sil",
        "pau": "sil",
    }
    for ph, vis in expected.items():
        assert phone_to_viseme(ph) == vis
    assert phone_to_viseme("AH0") == phone_to_viseme("ah") == "aa"
    assert phone_to_viseme(" IY1 ") == "I"
    with pytest.raises(ValueError, match="unknown phone 'xx'"):
        phone_to_viseme("xx")


def test_viseme_track_a0009_against_loop(a0009):
    ph = read_phone_labels(data_path("arctic_a0009_phone.lab"))
    f = features(a0009, 16000)
    track = viseme_track(ph, f.n_frames)
    assert track.shape == (f.n_frames,) and track.dtype == np.int64
    for t in range(f.n_frames):  # slow oracle
        time = t / 25.0
        hit = [p for p in ph if p.start <= time + 1e-9 < p.end]
        want = VISEMES.index(phone_to_viseme(hit[-1].phone)) if hit else 0
        assert track[t] == want, t
    assert track[0] == 0 and track[-1] == 0  # silence at both ends (label ends at 3.075 s)
    assert VISEMES.index("PP") in track  # the /p/ of "sharply", the /b/ of "table"
    assert len(set(track.tolist())) >= 8


def test_viseme_track_edges_and_errors():
    assert viseme_track([], 5).tolist() == [0] * 5
    ph = [Phone(0.1, 0.2, "m")]  # gap before, nothing after
    assert [VISEMES[i] for i in viseme_track(ph, 7)] == ["sil", "sil", "sil", "PP", "PP", "sil", "sil"]
    assert viseme_track(ph, 0).shape == (0,)
    with pytest.raises(ValueError, match="n_frames"):
        viseme_track(ph, -1)
    with pytest.raises(ValueError, match="fps"):
        viseme_track(ph, 3, fps=-25)
    with pytest.raises(ValueError, match="time order"):
        viseme_track([Phone(0.2, 0.3, "a"), Phone(0.0, 0.1, "m")], 3)
    with pytest.raises(ValueError, match="unknown phone"):
        viseme_track([Phone(0.0, 0.1, "qq")], 3)
